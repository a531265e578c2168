#!/bin/bash
# Test images only: what atomic-update sees and does, on the second serial
# port (ttyS1) where the test harness reads it, on every boot: the agent's
# journal as it happens ("ABLOG N| ..."), the previous boot's, and its status every 15 s
# ("ABSTATUS N| ..."), N counting this machine's boots.
exec >>/dev/ttyS1 2>&1
n=$(($(cat /var/lib/atomicbuild-test-boots 2>/dev/null || echo 0) + 1))
echo "$n" > /var/lib/atomicbuild-test-boots
say() { while IFS= read -r l; do echo "$1 $n| $l"; done; }
echo "ABBOOT $n| marker=$(cat /usr/share/atomicbuild-test/marker) etc-edit=$(cat /etc/atomicbuild-test/hold 2>/dev/null || echo missing) $(grep -a -o 'boot_counter=[0-9]*' /boot/grub/grubenv || echo no-counter) $(grep -o 'console=ttyS0[^ ]*' /proc/cmdline || echo console=none)"
# The previous boot's agent lines ("ABPREV N| ..."): an agent that reboots
# the machine early in a boot can do it before the follower below prints.
journalctl -b -1 -u atomic-update -o cat 2>/dev/null | say ABPREV
journalctl -b -f -u atomic-update -o cat | say ABLOG &
while true; do
  /usr/libexec/atomic-update status 2>&1 | say ABSTATUS
  sleep 15
done
