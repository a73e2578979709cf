#!/bin/bash
# The stand-in's start: what apache/kafka's image documents for its KAFKA_* variables. Each
# KAFKA_X_Y becomes the broker property x.y (`__` an underscore, `___` a dash); the variables it
# does not set take the official image's KRaft defaults; storage is formatted on first start.
set -euo pipefail
declare -A defaults=(
  [CLUSTER_ID]=5L6g3nShT-eMCtK--X86sw
  [KAFKA_NODE_ID]=1
  [KAFKA_PROCESS_ROLES]=broker,controller
  [KAFKA_LISTENERS]=PLAINTEXT://localhost:29092,CONTROLLER://localhost:29093,PLAINTEXT_HOST://0.0.0.0:9092
  [KAFKA_ADVERTISED_LISTENERS]=PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092
  [KAFKA_LISTENER_SECURITY_PROTOCOL_MAP]=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT
  [KAFKA_CONTROLLER_QUORUM_VOTERS]=1@localhost:29093
  [KAFKA_CONTROLLER_LISTENER_NAMES]=CONTROLLER
  [KAFKA_INTER_BROKER_LISTENER_NAME]=PLAINTEXT
  [KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR]=1
  [KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR]=1
  [KAFKA_TRANSACTION_STATE_LOG_MIN_ISR]=1
  [KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS]=0
  [KAFKA_LOG_DIRS]=/tmp/kraft-combined-logs
)
for key in "${!defaults[@]}"; do
  [ -n "${!key:-}" ] || export "$key=${defaults[$key]}"
done
props=/opt/kafka/config/server.properties
: > "$props"
for var in $(compgen -e); do
  case "$var" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JMX_OPTS | KAFKA_LOG4J_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_GC_LOG_OPTS) ;;
    KAFKA_VERSION | KAFKA_LOG4J_ROOT_LOGLEVEL | KAFKA_LOG4J_LOGGERS | KAFKA_TOOLS_LOG4J_LOGLEVEL) ;;
    KAFKA_*)
      name="${var#KAFKA_}"; name="${name,,}"
      name="${name//___/-}"; name="${name//__/@}"; name="${name//_/.}"; name="${name//@/_}"
      printf '%s=%s\n' "$name" "${!var}" >> "$props" ;;
  esac
done
# the JVM's own variables go to the JVM, as kafka-run-class.sh passes them (KAFKA_OPTS: a JAAS file, say)
# shellcheck disable=SC2206
jvm=(java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -Djava.awt.headless=true}
     ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-} ${KAFKA_OPTS:-}
     ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties} -cp '/opt/kafka/libs/*')
"${jvm[@]}" kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" --config "$props" --ignore-formatted
exec "${jvm[@]}" kafka.Kafka "$props"
