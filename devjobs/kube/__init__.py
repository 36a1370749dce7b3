"""The Kubernetes layer under both `devjobs run` and the controller."""
