"""Version strings. Admin `version` reports the gearmand release we are compatible with first, because
some client libraries compare it (CAN_DO_TIMEOUT is in milliseconds from 1.1.19 on)."""

__version__ = "0.1.0"
COMPATIBLE_GEARMAND = "1.1.20"
SERVER_VERSION = f"{COMPATIBLE_GEARMAND}+gearman-gateway.{__version__}"
