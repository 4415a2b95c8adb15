#!/bin/sh
logger -t keepalived-notify "$@"
