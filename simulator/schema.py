"""Which properties each resource has, which are returned by default, and their empty values.

Default property sets follow Microsoft's documented responses in tests/simulator/examples
(user-get/user-list example 1, group-get/group-list example 1). Any other known property is
returned only when named in `$select`. A `$select` of an unknown property is a 400.
"""

from __future__ import annotations

from typing import Any

USER_DEFAULT: tuple[str, ...] = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)

# Known user properties returned only on $select (a subset of resources/user.md).
USER_SELECT_ONLY: tuple[str, ...] = (
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "assignedPlans",
    "city",
    "companyName",
    "country",
    "createdDateTime",
    "creationType",
    "deletedDateTime",
    "department",
    "employeeId",
    "employeeType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "faxNumber",
    "identities",
    "imAddresses",
    "licenseAssignmentStates",
    "mailNickname",
    "onPremisesImmutableId",
    "onPremisesSamAccountName",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "otherMails",
    "postalCode",
    "preferredDataLocation",
    "proxyAddresses",
    "showInAddressList",
    "state",
    "streetAddress",
    "usageLocation",
    "userType",
)

GROUP_DEFAULT: tuple[str, ...] = (
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "theme",
    "visibility",
    "onPremisesProvisioningErrors",
)

GROUP_SELECT_ONLY: tuple[str, ...] = (
    "allowExternalSenders",
    "assignedLicenses",
    "autoSubscribeNewMembers",
    "hideFromAddressLists",
    "hideFromOutlookClients",
    "isSubscribedByMail",
    "licenseProcessingState",
    "unseenCount",
    # Filterable but never returned, even on $select (docs/graph-facts.md, queries 2).
    "hasMembersWithLicenseErrors",
)

# companySubscription (companySubscription resource type), all returned by default.
SUBSCRIPTION_PROPERTIES: tuple[str, ...] = (
    "commerceSubscriptionId",
    "createdDateTime",
    "id",
    "isTrial",
    "nextLifecycleDateTime",
    "ownerId",
    "ownerTenantId",
    "ownerType",
    "serviceStatus",
    "skuId",
    "skuPartNumber",
    "status",
    "totalLicenses",
)
SKU_PROPERTIES: tuple[str, ...] = (
    "accountName",
    "accountId",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "id",
    "prepaidUnits",
    "servicePlans",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
)

NEVER_RETURNED: frozenset[str] = frozenset({"hasMembersWithLicenseErrors"})

# Collection-valued properties: an unset one reads as [] rather than null.
COLLECTIONS: frozenset[str] = frozenset(
    {
        "businessPhones",
        "groupTypes",
        "proxyAddresses",
        "resourceBehaviorOptions",
        "resourceProvisioningOptions",
        "onPremisesProvisioningErrors",
        "identities",
        "imAddresses",
        "otherMails",
        "assignedLicenses",
        "assignedPlans",
        "licenseAssignmentStates",
    }
)

EXTENSION_PREFIX = "extension_"


def canonical(name: str, known: tuple[str, ...] | list[str]) -> str | None:
    """Graph property names are case-insensitive on input; answer with the canonical spelling."""
    lowered = name.lower()
    for candidate in known:
        if candidate.lower() == lowered:
            return candidate
    return None


def empty_value(name: str) -> Any:
    return [] if name in COLLECTIONS else None
