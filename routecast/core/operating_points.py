"""Operating points and the one knob -> lam resolution, shared by routers and cascade routers.

Why one place: a request names its trade-off the same way whether the checkpoint holds a router or
a cascade - one of the :data:`KNOBS` (``lam``, ``budget``, ``strong_share``, ``target_quality``) or
a named point (``"model": "router:NAME"``) - so the check, the lookup, the default and the errors a
user sees must not drift apart. :meth:`OperatingPoints.resolve_lam` is the only code that turns a
request into lam: a named point or the default point gives its stored lam, ``lam`` is taken as
is, and the other knobs are read from the owner's operating curve (``lam_for`` of
:class:`routecast.core.curve.Curve`, measured on validation, or predicted for the batch).

The owner class sets ``operating_points_`` (name -> {lam, request, ...}) and
``default_operating_point_`` in ``fit``/calibration/loading, says in ``_POINTS_HINT`` how a user
adds points, and provides ``operating_curve()`` and ``_fallback_lam()`` (the lam of a request that
names nothing when no default point is set).
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

from routecast.errors import RoutingError

#: the operating knobs a request may give (at most one), in the order errors list them
KNOBS = ("lam", "budget", "strong_share", "target_quality")
#: the knobs read from an operating curve (``lam`` is used as given)
CURVE_KNOBS = KNOBS[1:]


def check_one_knob(*, lam=None, budget=None, strong_share=None, target_quality=None) -> str | None:
    """Name of the one operating knob given (None if none); two or more are an error."""
    values = {"lam": lam, "budget": budget, "strong_share": strong_share, "target_quality": target_quality}
    given = [k for k in KNOBS if values[k] is not None]
    if len(given) > 1:
        raise RoutingError(f"give at most one of {', '.join(KNOBS)} (got {given})")
    for name in ("lam", "budget", "target_quality"):
        value = values[name]
        if value is not None and (isinstance(value, bool) or not math.isfinite(float(value))
                                  or (name != "target_quality" and float(value) < 0)):
            raise RoutingError(f"{name} must be a finite number{' >= 0' if name != 'target_quality' else ''}, "
                               f"got {value!r}")
    if strong_share is not None and (isinstance(strong_share, bool) or not 0.0 <= float(strong_share) <= 1.0):
        raise RoutingError(f"strong_share must be in [0, 1], got {strong_share!r}")
    return given[0] if given else None


def check_point_name(name: Any) -> None:
    """A point name travels in ``"model": "router:NAME"``: 1-64 printable characters, no ':'."""
    if not isinstance(name, str) or not name or not name.isprintable() or ":" in name or len(name) > 64:
        raise RoutingError(f"operating point name must be 1-64 printable characters without ':', got {name!r}")


class OperatingPoints:
    """Named operating points and the knob -> lam resolution (mixin of an estimator)."""

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

    # ------------------------------------------------------ the one resolution
    def resolve_lam(self, request: dict[str, Any], curve: Callable[[], Any] | None = None
                    ) -> tuple[float, str | None]:
        """(lam, name of the point it came from or None) for a request of at most one of
        :data:`KNOBS` or ``operating_point``. Nothing given: the default point, else
        ``_fallback_lam()``. ``curve`` builds the curve budgets and targets are read from
        (default: ``self.operating_curve()``); it is called only when one of them is given."""
        request = {k: v for k, v in request.items() if v is not None}
        point = request.pop("operating_point", None)
        unknown = sorted(set(request) - set(KNOBS))
        if unknown:
            raise RoutingError(f"unknown operating knob(s) {', '.join(unknown)}; give one of "
                               f"{', '.join(KNOBS)} or operating_point")
        knob = check_one_knob(**request)
        if knob is not None and point is not None:
            raise RoutingError(f"give either operating_point or {knob}, not both")
        if knob is None:
            point = point if point is not None else self.default_operating_point()
            if point is None:
                return float(self._fallback_lam()), None
            return float(self.operating_point(point)["lam"]), point
        if knob == "lam":
            return float(request["lam"]), None
        source = self.operating_curve() if curve is None else curve()
        return float(source.lam_for(**{knob: request[knob]})), None

    def lam_for(self, **request: Any) -> float:
        """lam meeting one of :data:`KNOBS` (budgets and targets on the operating curve), or the
        lam of a named ``operating_point``; nothing given: the default point's, else the owner's own."""
        self._check_fitted()
        return self.resolve_lam(request)[0]

    def add_operating_point(self, name: str, point: dict[str, Any] | None = None, *, make_default: bool = True,
                            **request: Any) -> Any:
        """Store a named point and (by default) make it the one used when a request names none.

        Give either ``point`` (a dict with ``lam``, finite and >= 0, plus what was measured there,
        as calibration writes it) or one knob (``lam=``, ``budget=``, ``strong_share=``,
        ``target_quality=``), resolved now by :meth:`lam_for` and stored with the request."""
        self._check_fitted()
        check_point_name(name)
        if point is None:
            if check_one_knob(**request) is None:
                raise RoutingError(f"give one of {', '.join(KNOBS)} for the operating point")
            point = {"lam": self.lam_for(**request), "request": dict(request)}
        elif request:
            raise RoutingError(f"operating point {name!r}: give a point or a knob, not both")
        lam = point.get("lam")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise RoutingError(f"operating point {name!r}: lam must be a finite number >= 0, got {lam!r}")
        points = self.operating_points()
        points[name] = {**point, "lam": float(lam)}
        self.operating_points_ = points
        if make_default:
            self.default_operating_point_ = name
        return self

    def _fallback_lam(self) -> float:
        """lam of a request that names nothing, when no default point is set: best quality."""
        return 0.0
