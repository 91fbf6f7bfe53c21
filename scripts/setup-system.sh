#!/usr/bin/env bash
# Installs the Debian packages stowage's tests, benchmarks and recipes use:
# real sshd, MariaDB, PostgreSQL, mydumper, pigz, subversion, rsync, sqlite3.
# Idempotent and fast when everything is already there (no apt call at all).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

have sshd || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
have ssh || need+=(openssh-client)
have ssh-keygen || need+=(openssh-client)
{ have mariadbd || [ -x /usr/sbin/mariadbd ]; } || need+=(mariadb-server)
have mariadb-install-db || need+=(mariadb-server)
have mariadb || need+=(mariadb-client)
{ [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ]; } || need+=(postgresql)
have pg_dump || need+=(postgresql-client)
have mydumper || need+=(mydumper)
have pigz || need+=(pigz)
have svnadmin || need+=(subversion)
have rsync || need+=(rsync)
have sqlite3 || need+=(sqlite3)
have runuser || need+=(util-linux)
{ have mount && have umount; } || need+=(mount)
have ps || need+=(procps)
have ip || need+=(iproute2)
# PostgreSQL refuses to run as root: as root the test harness runs the
# cluster as the "postgres" account, which the postgresql package creates.
if [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null 2>&1; then need+=(postgresql); fi

if [ ${#need[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  need=($(printf '%s\n' "${need[@]}" | sort -u))
  echo "setup-system: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  # Installed services must not be started by the package scripts: the test
  # suite starts its own on free loopback ports. A policy-rc.d answering 101
  # ("action forbidden") tells invoke-rc.d not to start them; ours is removed
  # afterwards, an existing one is left alone.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    own_policy=1
  fi
  trap 'if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi' EXIT
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# sshd started as root needs its privilege separation folder (normally made
# by the service unit, which does not run here).
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p /run/sshd
  chmod 0755 /run/sshd
fi
echo "setup-system: ok" >&2
