#!/usr/bin/env bash
# Stops the controller `make demo` left running. Tests run controllers of their own, one per
# test namespace; the demo's watches every namespace and would reconcile their Agents too.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
stop_component kubeoc-controller INT
