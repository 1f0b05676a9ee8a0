"""Well-known names of the PodProtector API (design.md §3). They are the wire contract."""

from __future__ import annotations

from types import MappingProxyType

GROUP = "podseidon.kubewharf.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PodProtector"
LIST_KIND = "PodProtectorList"
PLURAL = "podprotectors"
SINGULAR = "podprotector"
SHORT_NAME = "ppr"
CRD_NAME = f"{PLURAL}.{GROUP}"

# Every label, annotation and finalizer below lives under this prefix.
PREFIX = f"{GROUP}/"

# Labels on a generated PodProtector naming the workload it came from.
LABEL_SOURCE_NAME = f"{PREFIX}source-name"
LABEL_SOURCE_KIND = f"{PREFIX}source-kind"
LABEL_SOURCE_GROUP = f"{PREFIX}source-group"
LABEL_SOURCE_RESOURCE = f"{PREFIX}source-resource"
SOURCE_LABELS = (LABEL_SOURCE_NAME, LABEL_SOURCE_KIND, LABEL_SOURCE_GROUP, LABEL_SOURCE_RESOURCE)

# On workloads and PodProtectors: the protector outlives the workload unless it is deleted
# explicitly.
FINALIZER_GENERATOR = f"{PREFIX}generator"

# On a PodProtector: comma-separated cell IDs the generator drops from status once.
ANNOTATION_REMOVE_CELL_ONCE = f"{PREFIX}remove-cell-once"
# On a pod: never reject its deletion (it is still recorded and counted).
ANNOTATION_FORCE_DELETE = f"{PREFIX}force-delete"
# On a pod or an Eviction: judge the deletion at Available/Ready/Running/Scheduled.
ANNOTATION_HEALTH_CRITERION = f"{PREFIX}health-criterion"
# On the aggregator's dummy pod: bumped so that quiet cells still produce pod events.
ANNOTATION_UPDATE_TRIGGER_TIME = f"{PREFIX}update-trigger-time"

# Audit annotations on an AdmissionResponse (kube-apiserver prefixes them with the webhook name).
AUDIT_DRY_RUN = f"{PREFIX}dry-run"
AUDIT_REJECT_BY_PODPROTECTOR = f"{PREFIX}reject-by-podprotector"

# Workloads carrying this label are protected under the default generator configuration.
LABEL_PROTECT = f"{PREFIX}protect"
DEFAULT_PROTECTION_SELECTOR = f"{LABEL_PROTECT}=true"
# Per workload kind (`resource.group`); read-only so no importer can change it for everyone.
DEFAULT_PROTECTION_SELECTORS = MappingProxyType({"deployments.apps": DEFAULT_PROTECTION_SELECTOR})

WEBHOOK_CONFIG_NAME = GROUP

# The cell ID of a single-cluster setup.
DEFAULT_CELL_ID = "default"
