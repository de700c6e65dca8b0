// The pod sandbox's pause process, built here because no registry serves the pause image.
module detour.local/cluster/pause

go 1.24
