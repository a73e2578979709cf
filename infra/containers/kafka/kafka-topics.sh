#!/bin/bash
# The official image's /opt/kafka/bin/kafka-topics.sh, which compose's health check calls.
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' org.apache.kafka.tools.TopicCommand "$@"
