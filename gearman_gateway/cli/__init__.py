"""Command-line entry points: gearmand, gearman, gearadmin."""

#: The environment variable holding an identity's token for gearman and gearadmin (docs/security.md): not an
#: option, since a command line is visible to every user of the machine.
TOKEN_VARIABLE = "GEARMAN_TOKEN"
