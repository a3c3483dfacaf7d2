//! cgroup v2 workspaces (see the cgroup issue).
