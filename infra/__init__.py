"""Deployment files (Dockerfile, compose, Kubernetes) and ``infra.cluster``: a local
cluster on loopback, PostgreSQL plus N replicas plus the example app. Not shipped in the
wheel."""
