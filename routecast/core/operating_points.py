"""Named operating points, the one store both routers and cascade routers keep.

Why one place: a server request names a point (``"model": "router:NAME"``) the same way whether
the checkpoint holds a router or a cascade, so the lookup, the default and the error a user sees
for an unknown name must not drift apart. The owner class sets ``operating_points_`` (name ->
{lam, request, ...}) and ``default_operating_point_`` in ``fit``/calibration/loading and says in
``_POINTS_HINT`` how a user adds points; how a point is made (calibrated on validation, or
resolved from one knob) stays with the owner.
"""

from __future__ import annotations

from typing import Any, ClassVar

from routecast.errors import RoutingError


class OperatingPoints:
    """Read access to ``operating_points_`` / ``default_operating_point_`` (mixin)."""

    #: what the unknown-point error suggests when the owner has no point yet
    _POINTS_HINT: ClassVar[str] = "run calibrate first"
    #: the owner's noun in that error ("router", "cascade")
    _POINTS_OWNER: ClassVar[str] = "router"

    def operating_points(self) -> dict[str, dict[str, Any]]:
        """Named operating points: name -> {lam, request, ...}, saved in the checkpoint."""
        return dict(getattr(self, "operating_points_", None) or {})

    def default_operating_point(self) -> str | None:
        """The point used when a request names no knob (None: the owner's own default lam)."""
        name = getattr(self, "default_operating_point_", None)
        return name if name in self.operating_points() else None

    def operating_point(self, name: str) -> dict[str, Any]:
        points = self.operating_points()
        if name not in points:
            known = ", ".join(sorted(points)) or f"none ({self._POINTS_HINT})"
            raise RoutingError(f"unknown operating point {name!r}; this {self._POINTS_OWNER} has: {known}")
        return points[name]
