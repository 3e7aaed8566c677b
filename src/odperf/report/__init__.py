"""Reports rendered from saved runs: tables and figures (``index``), cross-hardware comparison
(``compare``) and the CI regression gate (``gate``). Everything here reads results JSON only."""
