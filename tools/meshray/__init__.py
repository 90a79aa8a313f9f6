"""meshray: tooling for the meshray Helm chart (Ray on KubeRay inside an Istio mesh)."""

__version__ = "0.1.0"
