#!/bin/sh
# Run by busybox `uevent` for every kernel uevent (netlink group 1), with the event's
# properties in the environment: one line per event for the scenarios to grep.
echo "$SEQNUM $ACTION $SUBSYSTEM ${DEVTYPE:--} $DEVPATH ${SDEV_UA:+SDEV_UA=$SDEV_UA}${SYNTH_UUID:+SYNTH_UUID=$SYNTH_UUID}" >>/run/hbadvm/uevents
