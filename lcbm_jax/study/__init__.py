"""Studies: arms x seeds run resumably (runner), compared with intervals (stats), rendered (report)."""
