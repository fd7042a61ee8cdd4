"""The project's own infrastructure, run from the repository's root as `python -m hack.<module>`:

- `toolchain`: building what this machine lacks (Go modules into a versioned cache, Debian packages);
- `procs`: starting, waiting for and stopping the long-running processes below;
- `controlplane`: etcd and kube-apiserver;
- `node`: kubelet, controller-manager, scheduler and containerd beside the control plane;
- `images`: the base images, the pause image and the project's image from its Dockerfile;
- `flux`: Flux's controllers and an OCI registry on loopback; `oci`: pushing an artifact to it;
- `postgres`: a throwaway PostgreSQL; `demo`: the main job; `docs`: the README's generated table.
"""
