# pg_pipeline: PostgreSQL 15 extension, built with PGXS.
#
#   make test        install what is missing, build, run every test suite
#   make test SANITIZE=1   the same with the extension built with
#                    AddressSanitizer and UndefinedBehaviorSanitizer
#   make demo        start a throwaway cluster and a Kafka test broker
#   make demo-stop   tear the demo down

EXTENSION = pg_pipeline
MODULE_big = pg_pipeline
OBJS = \
	src/pg_pipeline.o \
	src/guc.o \
	src/shmem.o \
	src/ddl_watch.o \
	src/launcher.o \
	src/supervisor.o \
	src/workers.o \
	src/catalog.o \
	src/access_log.o \
	src/kafka_decode.o \
	src/copy_input.o \
	src/kafka_source.o \
	src/kafka_sink.o \
	src/kafka_properties.o \
	src/aggregate.o \
	src/report.o \
	src/fraud_simulator.o \
	src/fraud_scorer.o \
	src/fraud_model.o \
	src/detector.o \
	src/web_simulator.o \
	src/schedule.o \
	src/scheduler.o \
	src/job_worker.o
DATA = $(wildcard pg_pipeline--*.sql)
PGFILEDESC = "pg_pipeline - data pipelines inside PostgreSQL"

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=.

PKG_CONFIG ?= pkg-config
RDKAFKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags rdkafka 2>/dev/null)
RDKAFKA_LIBS := $(shell $(PKG_CONFIG) --libs rdkafka 2>/dev/null)

PG_CPPFLAGS = -I$(srcdir)/src $(RDKAFKA_CFLAGS)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers
ifeq ($(WERROR),1)
PG_CFLAGS += -Werror
endif
SHLIB_LINK = $(RDKAFKA_LIBS)

# SANITIZE=1: AddressSanitizer and UndefinedBehaviorSanitizer in our code.
# The server must then run with libasan preloaded (test/sanitize/setup).
ifeq ($(SANITIZE),1)
SANITIZER_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
PG_CFLAGS += $(SANITIZER_FLAGS)
SHLIB_LINK += $(SANITIZER_FLAGS)
endif
# Objects are rebuilt when the flavour changes: a build rewrites the stamp
# only then, at parse time (PGXS makes every target .SECONDARY, so a rule
# for a missing stamp would never run).
BUILD_FLAVOUR = $(if $(filter 1,$(SANITIZE)),sanitize,plain)
ifeq ($(filter-out all install,$(or $(MAKECMDGOALS),all)),)
$(shell [ "$$(cat src/build-flavour 2>/dev/null)" = "$(BUILD_FLAVOUR)" ] || echo "$(BUILD_FLAVOUR)" >src/build-flavour)
endif

MOCK_BROKER = test/kafka_mock_broker
READ_RATE = test/kafka_read_rate
EXTRA_CLEAN = $(MOCK_BROKER) $(READ_RATE) results regression.diffs regression.out \
	src/build-flavour

# Debian keeps one pg_config per major version; prefer 15's.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

# Without the server headers (a fresh machine) only test/demo work: they
# install the headers first and then call make again.
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)

all: $(MOCK_BROKER) $(READ_RATE)

# PGXS tracks no header dependencies here: rebuild on any header change
$(OBJS): $(wildcard src/*.h) src/build-flavour

$(MOCK_BROKER): test/kafka_mock_broker.c
	$(CC) -O2 -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) $(RDKAFKA_CFLAGS) \
		-o $@ $< $(RDKAFKA_LIBS)

$(READ_RATE): test/kafka_read_rate.c
	$(CC) -O2 -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) $(RDKAFKA_CFLAGS) \
		-o $@ $< $(RDKAFKA_LIBS)
endif

.PHONY: test demo demo-stop fuzz valgrind

test:
	bash test/run

demo:
	bash test/demo start

demo-stop:
	bash test/demo stop

# FUZZ_SECONDS=n (default 60) or FUZZ_RUNS=n per target; see test/fuzz/run
fuzz:
	bash test/fuzz/run

# one short stream through every worker under memcheck; see test/valgrind.sh
valgrind:
	bash test/valgrind.sh
