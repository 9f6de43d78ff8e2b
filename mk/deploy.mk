# Deployment artifacts: the Helm chart, the plain manifests rendered from it,
# and container images. Included from the Makefile.

.PHONY: helm-lint deploy-manifests image

## helm-lint: check helm/petrel (required values, lint, rendered objects, each binary's --check-config with the chart's environment) and that deploy/ is current
helm-lint:
	bash scripts/helm.sh

## deploy-manifests: regenerate deploy/kubernetes/petrel.yaml from the chart with deploy/kubernetes/values.yaml
deploy-manifests:
	bash scripts/helm.sh render deploy/kubernetes/petrel.yaml

## image: build an OCI image per service with buildah into bin/images/ (SERVICES=... to pick; IMAGE_TAG, IMAGE_REGISTRY)
image:
	bash scripts/image.sh $(SERVICES)
