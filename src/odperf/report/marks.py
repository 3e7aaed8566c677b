"""What a figure draws besides measured points: limit lines (device memory, deadlines), point labels set
apart from each other, and seconds on log axes, so a reader never takes a drawn mark for a measurement
and no label hides another.

Placement is done once the figure's constrained layout has run: each label tries a few offsets around its
anchor and keeps the first that overlaps no label, tick label, point or axes edge (else the one that
overlaps least, and never one that leaves the figure where another does not).
Placed labels are kept out of the layout, so laying the figure out again at saving moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

# A memory limit further than this factor above the largest peak is named, not drawn: it would flatten the
# data. A deadline is drawn within a closer factor of the measured times, where it says which models meet it.
FAR = 10.0
NEAR = 3.0

# Offsets in points from the anchor, with the alignment that keeps the text clear of it; nearest first.
_AROUND = ((5, 3, "left", "bottom"), (5, -3, "left", "top"), (-5, 3, "right", "bottom"),
           (-5, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"),
           (10, 12, "left", "bottom"), (10, -12, "left", "top"), (-10, 12, "right", "bottom"),
           (-10, -12, "right", "top"))
_ON_LINE = ((-3, 2, "right", "bottom"), (-3, -2, "right", "top"), (-60, 2, "right", "bottom"),
            (-60, -2, "right", "top"))
# A vertical line's label below the axes' top, beside the line, stepping down a line at a time: limits close
# together (a cap beside the runtime it sits above) need several rows.
_BELOW_TOP = tuple((dx, -3 - 11 * row, ha, "top") for row in range(16) for dx, ha in ((-2, "right"), (2, "left")))


def seconds_axis(axis: Any) -> None:
    """A log axis of seconds with ticks at 1, 2 and 5 of each decade, written plainly (0.2, not 2x10^-1)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def within(value: float, measured: Iterable[float], factor: float, log: bool) -> bool:
    """Whether a limit lies within ``factor`` of the measured values, close enough to draw on their axis."""
    seen = [v for v in measured if v is not None and v > 0]
    if not seen:
        return False
    if log:
        return min(seen) / factor <= value <= max(seen) * factor
    return value <= max(seen) * factor


def _area_outside(box: Bbox, frame: Bbox) -> float:
    inner = Bbox.intersection(box, frame)
    return box.width * box.height - (inner.width * inner.height if inner else 0.0)


def _overlap(a: Bbox, b: Bbox) -> float:
    inner = Bbox.intersection(a, b)
    return inner.width * inner.height if inner else 0.0


class Labeller:
    """Places labels on one axes, each clear of those placed before it and of the given points."""

    def __init__(self, ax: Axes, points: Sequence[tuple[float, float]] = ()):
        self.ax = ax
        fig = ax.get_figure()
        fig.draw_without_rendering()  # the layout and the axes limits are final from here
        self.renderer = fig.canvas.get_renderer()
        self.frame = ax.get_window_extent(self.renderer)
        self.figure_box = fig.bbox
        shown = [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
        self.taken = [t.get_window_extent(self.renderer) for t in shown if t.get_visible() and t.get_text()]
        for x, y in points:
            px, py = ax.transData.transform((x, y))
            self.taken.append(Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))

    def place(self, text: str, xy: tuple[float, float], xycoords: Any = "data", around: Sequence = _AROUND,
              **style: Any) -> Any:
        best = None
        for dx, dy, ha, va in around:
            ann = self.ax.annotate(text, xy, xycoords=xycoords, xytext=(dx, dy), textcoords="offset points",
                                   ha=ha, va=va, fontsize=7, annotation_clip=False, **style)
            ann.set_in_layout(False)
            box = ann.get_window_extent(self.renderer)
            cost = (_area_outside(box, self.figure_box) * 100 + _area_outside(box, self.frame) * 4
                    + sum(_overlap(box, t) for t in self.taken))
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        assert best is not None
        self.taken.append(best[2])
        return best[1]


@dataclass(frozen=True)
class Level:
    """A limit line across an axes: a device's memory or a deadline, never a measurement."""

    value: float
    label: str
    horizontal: bool = True
    color: str = "0.35"
    linestyle: str = "--"


def draw_levels(ax: Axes, levels: Sequence[Level]) -> None:
    """The lines now; their labels once the layout is final (``label_levels``)."""
    for lv in levels:
        (ax.axhline if lv.horizontal else ax.axvline)(lv.value, color=lv.color, linestyle=lv.linestyle,
                                                      linewidth=1.0, gid="limit")


def label_levels(labeller: Labeller, levels: Sequence[Level]) -> None:
    """Each line's label at the axes' far end, clear of the labels placed before it."""
    ax = labeller.ax
    for lv in levels:
        xy = (1.0, lv.value) if lv.horizontal else (lv.value, 1.0)
        trans = ax.get_yaxis_transform() if lv.horizontal else ax.get_xaxis_transform()
        ann = labeller.place(lv.label, xy, xycoords=trans, around=_ON_LINE if lv.horizontal else _BELOW_TOP,
                             color=lv.color, bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                                   "alpha": 0.8, "edgecolor": "none"})
        ann.set_gid("limit-label")
