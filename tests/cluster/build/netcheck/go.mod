// A static HTTP server and client for the node tests' image (no registry, so no busybox).
module detour.local/cluster/netcheck

go 1.24
