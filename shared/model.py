"""What a run reads from the tenant: plain immutable data for the planner."""

from __future__ import annotations

from dataclasses import dataclass, field

ASSIGNABLE_CAPABILITY = frozenset({"Enabled", "Warning"})


@dataclass(frozen=True)
class ServicePlan:
    id: str
    name: str


@dataclass(frozen=True)
class Sku:
    sku_id: str
    part_number: str
    capability_status: str
    applies_to: str
    enabled: int
    consumed: int
    service_plans: tuple[ServicePlan, ...] = ()

    @property
    def free(self) -> int:
        # Units in `warning` are expiring: not headroom (docs/graph-facts.md). Can be negative.
        return self.enabled - self.consumed

    @property
    def assignable(self) -> bool:
        return self.unassignable_reason is None

    @property
    def unassignable_reason(self) -> str | None:
        """Why no group may be given this SKU, or None. Fails closed on what Graph left out."""
        if not self.capability_status:
            return "has no capabilityStatus in Graph's answer (not assignable until it does)"
        if not self.applies_to:
            return "has no appliesTo in Graph's answer (not assignable until it does)"
        if self.capability_status not in ASSIGNABLE_CAPABILITY:
            return f"is {self.capability_status}, not assignable"
        if self.applies_to != "User":
            return f"applies to {self.applies_to}, not to users"
        return None

    def plan_by_name_or_id(self, ref: str) -> ServicePlan | None:
        low = ref.lower()
        for plan in self.service_plans:
            if plan.id.lower() == low or plan.name.lower() == low:
                return plan
        return None


@dataclass(frozen=True)
class AssignedLicense:
    sku_id: str
    disabled_plans: frozenset[str] = frozenset()


# licenseAssignmentState.state values that mean the user holds (and consumes) the SKU.
HOLDING_STATES = frozenset({"Active", "ActiveWithError"})


# slots: a large tenant holds a million users and their states (no per-instance __dict__).
@dataclass(frozen=True, slots=True)
class LicenseState:
    sku_id: str
    assigned_by_group: str | None
    state: str
    error: str | None
    # Plans this assignment disables; kept (with Active states) only for users the removal
    # reports look at: a direct assignment, or a disabled account (shared/graph._user).
    disabled_plans: frozenset[str] = frozenset()
    last_updated: str | None = None  # lastUpdatedDateTime as Graph gave it (the waiting list)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    upn: str
    user_type: str | None
    creation_type: str | None
    external_user_state: str | None
    account_enabled: bool | None
    held_skus: frozenset[str]  # from licenseAssignmentStates when present (graph._user)
    license_states: tuple[LicenseState, ...] = ()
    external_issuer: str | None = None  # a sign-in identity issued outside this tenant

    @property
    def is_b2b(self) -> bool:
        """docs/graph-facts.md's robust rule: one signal marks an external (B2B) account."""
        return (
            (self.user_type or "").lower() == "guest"
            or (self.creation_type or "").lower() == "invitation"
            or "#ext#" in self.upn.lower()
            or self.external_user_state is not None
            or self.external_issuer is not None
        )

    @property
    def is_internal_guest(self) -> bool:
        """userType Guest on an account of this tenant: blocked all the same, but named as such."""
        return (self.user_type or "").lower() == "guest" and not (
            (self.creation_type or "").lower() == "invitation"
            or "#ext#" in self.upn.lower()
            or self.external_user_state is not None
            or self.external_issuer is not None
        )

    def errors_from_group(self, group_id: str) -> dict[str, str]:
        """sku_id -> error code for this group's assignments to this user that are in error.

        A `Disabled` assignment without an error code is reported as `Disabled`.
        """
        out = {}
        for s in self.license_states:
            if s.assigned_by_group != group_id:
                continue
            if s.error and s.error != "None":
                out[s.sku_id] = s.error
            elif s.state == "Disabled":
                out[s.sku_id] = "Disabled"
        return out


@dataclass(frozen=True)
class Group:
    id: str
    display_name: str
    security_enabled: bool
    assigned_licenses: tuple[AssignedLicense, ...]
    processing_state: str | None
    profile: str  # the profile the policy tags it with
    priority: int = 100  # lower is decided first
    tag_problem: str | None = None  # e.g. tagged by two selectors with different profiles

    def license_for(self, sku_id: str) -> AssignedLicense | None:
        for lic in self.assigned_licenses:
            if lic.sku_id == sku_id:
                return lic
        return None


@dataclass(frozen=True)
class Membership:
    """A group's direct members as read, complete; or why they could not be read."""

    users: tuple[User, ...] = ()
    nested_group_ids: tuple[str, ...] = ()
    other_member_count: int = 0
    error: str | None = None

    @property
    def known(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Snapshot:
    skus: tuple[Sku, ...]
    groups: tuple[Group, ...]
    members: dict[str, Membership] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # run-level: what could not be checked, and why
    # Group ids a run was asked for that the policy does not tag (or that do not exist).
    requested_not_tagged: tuple[str, ...] = ()

    def sku(self, sku_id: str) -> Sku | None:
        for s in self.skus:
            if s.sku_id == sku_id:
                return s
        return None
