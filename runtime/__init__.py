"""kubesoar: code-first security playbooks on Kubernetes."""

__all__: list[str] = []
