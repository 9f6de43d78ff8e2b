# SMTP ingress benchmark: Postfix's smtp-source against petrel-smtp and a
# private stock Postfix, same machine, same run (docs/benchmarks.md).
# Included from the Makefile; needs root and the postfix package.

.PHONY: bench-smtp

## bench-smtp: smtp-source (1, 10, 50 sessions, 10 KiB) against petrel-smtp and a private Postfix
bench-smtp:
	bash scripts/bench-smtp.sh

bench: bench-smtp
