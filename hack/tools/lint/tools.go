//go:build tools

// Package tools pins golangci-lint, which `make lint` builds from this module
// (nothing is downloaded but Go modules), apart from svcguard's own module so
// that the linter's dependencies never mix with svcguard's.
package tools

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
