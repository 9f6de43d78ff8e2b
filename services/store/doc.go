// Package store is the mail store and directory: owns the PostgreSQL schema and the S3 bucket, and serves them to the other services over gRPC.
//
// It follows RFC 5322 (message format), RFC 2045 (MIME). The binary is cmd/petrel-store; its settings are
// Config's flags and PETREL_STORE_* variables (see package
// platform/config for the precedence rules).
package store
