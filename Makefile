# keymigrate — the commands a developer runs. See README.md.
SHELL := /bin/bash
GO_TEST_FLAGS ?= -count=1 -race -timeout 30m

.PHONY: demo demo-reset test test-unit build stack-up stack-down stack-env fuzz bench bench-throttle vet scale scale-latency image compose-up

## demo: a real migration of seeded legacy photos on the local stack
demo:
	deploy/local/demo.sh

## demo-reset: forget the demo's data (database, bucket, queues) so the next demo starts fresh
demo-reset:
	deploy/local/demo-reset.sh

## test: start the local stack, then run every test against it (versitygw, fauxqs); then, against
## MinIO (built once, about 15 minutes cold), the packages whose behaviour depends on the S3 server;
## then, against local-aws-sqs (the SQS server with message move tasks), those that depend on the
## SQS server. TEST_MINIO=0 or TEST_LOCAL_AWS_SQS=0 skips a pass (CI never does).
TEST_MINIO ?= 1
MINIO_TEST_PACKAGES := ./worker ./internal/pipeline/objstore ./internal/ops/verify ./internal/ops/rollback ./internal/ops/cleanup
TEST_LOCAL_AWS_SQS ?= 1
LOCAL_AWS_SQS_TEST_PACKAGES := ./internal/pipeline/queue ./internal/ops/dlq
## Of worker and e2e (whole, about 15 minutes more), the tests that lean on the queue: dead
## letters, receive budgets, releases, lost messages, stops and kills, pause, redrives.
LOCAL_AWS_SQS_TEST_RUN := ^(TestMissingSourceGoesToTheDLQ|TestMalformedMessageGoesToTheDLQ|TestInvalidOwnerAndUnrecognisedKeyGoToTheDLQ|TestDeadLetterRemovesTheCopiesOfAKilledAttempt|TestOwnReleasesDoNotEatTheReceiveBudget|TestLostMessagesAreFoundAndEnqueuedAgain|TestPostgresOutageDeadLettersNothing|TestS3OutageDeadLettersNothing|TestARowLockedByTheApplicationDoesNotHoldTheWorker|TestHardStopReleasesTheMessageAndSwapsNothing|TestSlowCopyIsNotDeliveredToASecondWorker|TestTwoWorkersSameMessageAtOnce|TestSameMessageTwiceGivesOneSwap|TestPauseStopsTheFleetWithinFiveSecondsAndResumeRestartsIt|TestDLQRedriveThroughAMessageMoveTask|TestRedriveKilledMidwayLosesNothing|TestSweepFindsLostMessagesWithNoWorkerRunning|TestSIGTERMMidBatchLosesNothing|TestSIGKILLAtAnyPointConverges)$$
test: stack-up
	eval "$$(deploy/local/stack.sh env)" && go test $(GO_TEST_FLAGS) ./...
	if [[ "$(TEST_MINIO)" != 0 ]]; then \
		KEYMIGRATE_S3=minio deploy/local/stack.sh up && \
		eval "$$(KEYMIGRATE_S3=minio deploy/local/stack.sh env)" && go test $(GO_TEST_FLAGS) $(MINIO_TEST_PACKAGES); \
	fi
	if [[ "$(TEST_LOCAL_AWS_SQS)" != 0 ]]; then \
		KEYMIGRATE_SQS=local-aws-sqs deploy/local/stack.sh up && \
		eval "$$(KEYMIGRATE_SQS=local-aws-sqs deploy/local/stack.sh env)" && go test $(GO_TEST_FLAGS) $(LOCAL_AWS_SQS_TEST_PACKAGES) && \
		go test $(GO_TEST_FLAGS) -run '$(LOCAL_AWS_SQS_TEST_RUN)' ./worker ./internal/harness/e2e; \
	fi

## test-unit: the tests that need no server (integration tests skip)
test-unit:
	go test $(GO_TEST_FLAGS) -short ./...

build:
	go build -o bin/ ./cmd/...

vet:
	go vet ./...

stack-up:
	deploy/local/stack.sh up

stack-down:
	deploy/local/stack.sh down

stack-env:
	@deploy/local/stack.sh env

## fuzz: fuzz the key layout and the StorageService refusals for FUZZTIME each
FUZZTIME ?= 60s
fuzz:
	go test ./internal/pipeline/keylayout -run '^$$' -fuzz FuzzUserScoped -fuzztime $(FUZZTIME)
	go test ./internal/pipeline/keylayout -run '^$$' -fuzz FuzzParseUserKey -fuzztime $(FUZZTIME)
	go test ./internal/pipeline/keylayout -run '^$$' -fuzz FuzzBuild -fuzztime $(FUZZTIME)
	go test ./internal/app/storage -run '^$$' -fuzz FuzzRefusals -fuzztime $(FUZZTIME)

## bench: the fleet against a raw CopyObject loop and s5cmd on the same objects, S3 requests per
## object, and the fleet without the source recheck (not part of the tests; docs/performance.md)
bench: stack-up
	deploy/local/bench.sh bench

## bench-throttle: the fleet with no faults, 5% SlowDown, 5% InternalError, and under a hard limit
## that is then lifted: throughput kept, the limit found, the recovery (docs/performance.md)
bench-throttle: stack-up
	deploy/local/bench.sh throttle

## smoke: Phase 1 smoke test: presigned uploads against a scratch bucket on the local stack (no database needed)
.PHONY: smoke
smoke: stack-up
	eval "$$(deploy/local/stack.sh env)" && KEYMIGRATE_BUCKET="keymigrate-smoke-$$(date +%s)" go run ./cmd/migratectl presign smoke --create-bucket

## scale: photos/s of 1, 2 and 4 workers on the same seeded backlog (not part of the tests)
scale: stack-up
	deploy/local/scale.sh

## scale-latency: with 30 ms added to every S3 request, one worker at --concurrency 16, 64, 256,
## then 1, 2 and 4 workers (not part of the tests; docs/performance.md)
scale-latency: stack-up
	deploy/local/bench.sh scale-latency

## staged-bench: a staged rollout on the local stack: stage 1 a 20% sample, the plan calibrated from
## its ledger (--calibrate-run), stage 2 the rest; the plan's duration against stage 2's measured one
## (docs/operating-plan-rollout-report.md "Duration"; a benchmark, not a test)
.PHONY: staged-bench
staged-bench: stack-up
	deploy/local/bench.sh staged

## scale-bench: plan, status, verify and cleanup (1 and 4 shards) and ledger compact on 10^7 photos
## loaded by SQL beside a synthetic S3 endpoint: per-10^6 figures (docs/scale.md; a benchmark, not a
## test: run it alone; SCALE_BENCH_PHOTOS=N for another size)
.PHONY: scale-bench
scale-bench: stack-up
	deploy/local/bench.sh scale-bench

## image: the container image (needs a Docker engine)
image:
	docker build -t keymigrate:local .

## compose-up: the demo on Docker: servers, setup, seed, producer and 4 workers
compose-up:
	docker compose up --build --scale worker=4

## soak: the whole system under a live application and failing infrastructure for SOAK_DURATION,
## then the invariants (see docs/soak.md). SOAK_SEED=N replays a run's schedule; KEYMIGRATE_S3=minio
## runs it on MinIO; SOAK_JSON=FILE also writes the report as JSON; SOAK_COPY_FIRST=on|off|mixed picks the
## workers' copy paths (mixed: careful and copy-first workers side by side); SOAK_S3_OUTAGE=D makes each of
## the two S3 outages D long; SOAK_S3_PARTIAL_OUTAGE=D adds a partial one (every write fails, reads
## answer) D long; SOAK_ARCHIVED_OPS=false leaves out the operator's `archived assign` (twice) and `archived purge`;
## SOAK_LIST_PHOTOS=false leaves out the application's listings; SOAK_APP_DIRECT_ONLY=true keeps every application
## client off the S3 fault proxy (docs/soak.md). A two-minute run is part of `make test`.
SOAK_DURATION ?= 30m
SOAK_SEED ?= 0
SOAK_JSON ?=
SOAK_COPY_FIRST ?= mixed
SOAK_LEGACY_REWRITES ?= false
SOAK_S3_OUTAGE ?=
SOAK_S3_PARTIAL_OUTAGE ?=
SOAK_ARCHIVED_OPS ?= true
SOAK_LIST_PHOTOS ?= true
SOAK_APP_DIRECT_ONLY ?= false
.PHONY: soak
soak: stack-up
	eval "$$(deploy/local/stack.sh env)" && go test ./internal/harness/soak -run '^TestSoak$$' -count=1 -timeout 0 -v \
		-args -soak.duration=$(SOAK_DURATION) -soak.seed=$(SOAK_SEED) -soak.copy-first=$(SOAK_COPY_FIRST) -soak.legacy-rewrites=$(SOAK_LEGACY_REWRITES) -soak.archived-ops=$(SOAK_ARCHIVED_OPS) -soak.list-photos=$(SOAK_LIST_PHOTOS) -soak.app-direct-only=$(SOAK_APP_DIRECT_ONLY) $(if $(SOAK_JSON),-soak.json=$(abspath $(SOAK_JSON))) $(if $(SOAK_S3_OUTAGE),-soak.s3-outage=$(SOAK_S3_OUTAGE)) $(if $(SOAK_S3_PARTIAL_OUTAGE),-soak.s3-partial-outage=$(SOAK_S3_PARTIAL_OUTAGE))
