//go:build tools

// Package tools pins the Helm CLI that the end-to-end tests use to install the chart.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
