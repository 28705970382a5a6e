"""Owner-level tags: declarative definitions, owner features in ClickHouse, the diffing engine."""

from vehicle_ingest.tags.cycle import TagCycle
from vehicle_ingest.tags.definitions import OWNER_FEATURES, TagDefinition, load_tag_definitions
from vehicle_ingest.tags.engine import TagEngine, TagRunReport
from vehicle_ingest.tags.rules import Rule, parse_rule

__all__ = [
    "OWNER_FEATURES",
    "Rule",
    "TagCycle",
    "TagDefinition",
    "TagEngine",
    "TagRunReport",
    "load_tag_definitions",
    "parse_rule",
]
