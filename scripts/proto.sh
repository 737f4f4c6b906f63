#!/usr/bin/env bash
# Regenerates the plugin contract's Go code (sdk/proto/*.pb.go) from
# sdk/proto/plugin.proto. It installs what it needs: protoc from Debian's
# protobuf-compiler package, and protoc-gen-go / protoc-gen-go-grpc with
# `go install`, protoc-gen-go at the google.golang.org/protobuf version of
# go.mod so that the generated code matches the runtime it links against.
set -euo pipefail
cd "$(dirname "$0")/.."

# protoc-gen-go-grpc has its own release train; v1.5.x generates code for
# grpc-go 1.64 and later.
GRPC_GEN_VERSION=v1.5.1

if ! command -v protoc >/dev/null; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "proto.sh: protoc is missing; install Debian's protobuf-compiler package" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi

PB_VERSION=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
GOBIN=$(go env GOPATH)/bin
go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PB_VERSION}"
go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${GRPC_GEN_VERSION}"

PATH="$GOBIN:$PATH" protoc \
	--proto_path=sdk/proto \
	--go_out=sdk/proto --go_opt=paths=source_relative \
	--go-grpc_out=sdk/proto --go-grpc_opt=paths=source_relative \
	sdk/proto/plugin.proto
echo "proto.sh: regenerated sdk/proto with protoc $(protoc --version | cut -d' ' -f2), protoc-gen-go ${PB_VERSION}, protoc-gen-go-grpc ${GRPC_GEN_VERSION}"
