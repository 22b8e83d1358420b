#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, so that `make test-slurm` sends the workflow's jobs through
# sbatch: munged, MariaDB + slurmdbd (sacct, which the executor plugin polls), slurmctld and slurmd on this host,
# one partition holding the machine's CPUs and memory as `slurmd -C` detects them. Debian/Ubuntu, as root
# (it installs slurm-wlm, slurmdbd, munge and mariadb-server with apt when they are missing).
#
#   workflow/slurm/local_cluster.sh [up]   start what is not running and wait until the node is idle (idempotent)
#   workflow/slurm/local_cluster.sh down   stop the daemons (by their pid files; MariaDB through its init script)
#   workflow/slurm/local_cluster.sh status sinfo and the daemons' pids
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The partition and the account (root is added to it, so that the plugin checks slurm_account with sacctmgr as on
# a real cluster) that workflow/slurm/local/config.yaml names.
partition=local
account=local
cluster=asaplocal
conf_dir=/etc/slurm
run_dir=/run/slurm
log_dir=/var/log/slurm

die() { echo "local_cluster.sh: error: $*" >&2; exit 1; }
say() { echo "local_cluster.sh: $*"; }

# pid in a pid file, if that process is alive
alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND once a second until it succeeds
wait_for() {
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    return 1
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v munged >/dev/null || missing+=(munge)
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null || missing+=(mariadb-server)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them (Debian/Ubuntu only)"
    say "installing ${missing[*]} (and slurm-wlm) with apt"
    export DEBIAN_FRONTEND=noninteractive
    # An install from stale package lists fails with 404s; refresh them once and retry.
    apt-get install -y -q --no-install-recommends slurm-wlm "${missing[@]}" \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends slurm-wlm "${missing[@]}"; } \
        || die "apt-get could not install ${missing[*]}"
}

# The node line: what slurmd itself detects (CPUs, sockets, cores, threads, RealMemory), so that the node
# registers instead of being drained for a configuration larger than the hardware.
node_line() {
    local detected
    detected=$(slurmd -C 2>/dev/null | head -1) || true
    [[ "$detected" == NodeName=* ]] || die "'slurmd -C' did not describe this machine (got: '$detected')"
    # drop NodeName=..., keep CPUs=... Boards=... ... RealMemory=...
    echo "${detected#NodeName=* }"
}

render() { # render TEMPLATE: the template with this machine's values
    sed -e "s/@CLUSTER@/$cluster/g" -e "s/@HOST@/$host/g" -e "s/@PARTITION@/$partition/g" \
        -e "s/@NODE@/$node/g" "$1"
}

# write_if_changed FILE CONTENT MODE: write only a differing file; returns 0 when it wrote
write_if_changed() {
    if [[ -f "$1" ]] && [[ "$(cat "$1")" == "$2" ]]; then
        return 1
    fi
    printf '%s\n' "$2" > "$1"
    chmod "$3" "$1"
    return 0
}

start_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating the munge key"
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge && chown munge:munge /run/munge
    if ! alive /run/munge/munged.pid; then
        say "starting munged"
        runuser -u munge -- munged || die "munged did not start (see /var/log/munge/munged.log)"
    fi
    wait_for 20 munge sh -c 'munge -n | unmunge' || die "munge does not round-trip a credential"
}

start_mariadb() {
    if ! mysqladmin ping >/dev/null 2>&1; then
        say "starting MariaDB"
        if [[ -x /etc/init.d/mariadb ]]; then
            /etc/init.d/mariadb start >/dev/null || die "MariaDB did not start (/etc/init.d/mariadb start)"
        else
            die "no /etc/init.d/mariadb to start MariaDB with"
        fi
    fi
    wait_for 60 mariadb mysqladmin ping || die "MariaDB does not answer mysqladmin ping"
    mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db" || die "could not create the slurm_acct_db database"
}

start_slurmdbd() {
    if ! alive "$run_dir/slurmdbd.pid"; then
        say "starting slurmdbd"
        slurmdbd || die "slurmdbd did not start (see $log_dir/slurmdbd.log)"
    fi
    wait_for 60 slurmdbd sacctmgr -n list cluster || die "slurmdbd does not answer sacctmgr (see $log_dir/slurmdbd.log)"
    # The cluster, an account and root in it: what sbatch -A and the plugin's account check look up.
    [[ -n "$(sacctmgr -n -P list cluster "$cluster" format=cluster)" ]] || sacctmgr -i -Q add cluster "$cluster"
    [[ -n "$(sacctmgr -n -P list account "$account" format=account)" ]] \
        || sacctmgr -i -Q add account "$account" cluster="$cluster" description="make test-slurm"
    sacctmgr -n -P list user root withassoc format=account | grep -qx "$account" \
        || sacctmgr -i -Q add user root account="$account" cluster="$cluster"
}

start_slurm() {
    if ! alive "$run_dir/slurmctld.pid"; then
        say "starting slurmctld"
        slurmctld || die "slurmctld did not start (see $log_dir/slurmctld.log)"
    fi
    wait_for 60 slurmctld scontrol ping || die "slurmctld does not answer scontrol ping (see $log_dir/slurmctld.log)"
    if ! alive "$run_dir/slurmd.pid"; then
        say "starting slurmd"
        slurmd || die "slurmd did not start (see $log_dir/slurmd.log)"
    fi
    local state=""
    for _ in $(seq 90); do
        state=$(sinfo -h -n "$host" -p "$partition" -o %T 2>/dev/null || true)
        case "$state" in
            idle | mixed | allocated) say "node $host is $state in partition $partition"; return 0 ;;
            *drain* | down*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    scontrol show node "$host" >&2 || true
    die "node $host is '$state', not idle, after 90 s (see $log_dir/slurmd.log and $log_dir/slurmctld.log)"
}

stop() {
    local daemon pid
    for daemon in slurmd slurmctld slurmdbd; do
        if alive "$run_dir/$daemon.pid"; then
            pid=$(cat "$run_dir/$daemon.pid")
            say "stopping $daemon (pid $pid)"
            kill "$pid"
            wait_for 30 "$daemon" sh -c "! kill -0 $pid 2>/dev/null" || die "$daemon (pid $pid) did not stop"
        fi
    done
}

up() {
    [[ $(id -u) -eq 0 ]] || die "run as root: it installs packages and starts system daemons"
    install_packages
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || die "this host's name '$host' does not resolve (add it to /etc/hosts)"
    node=$(node_line)
    mkdir -p "$conf_dir" "$run_dir" "$log_dir" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
    local changed=0
    write_if_changed "$conf_dir/slurm.conf" "$(render "$here/slurm.conf.in")" 644 && changed=1
    write_if_changed "$conf_dir/slurmdbd.conf" "$(render "$here/slurmdbd.conf.in")" 600 && changed=1
    # Daemons started with another configuration would not see the new one.
    [[ $changed -eq 1 ]] && { say "configuration written to $conf_dir"; stop; }
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurm
}

case "${1:-up}" in
    up) up ;;
    down)
        stop
        if mysqladmin ping >/dev/null 2>&1 && [[ -x /etc/init.d/mariadb ]]; then /etc/init.d/mariadb stop >/dev/null; fi
        alive /run/munge/munged.pid && kill "$(cat /run/munge/munged.pid)"
        say "stopped"
        ;;
    status)
        for daemon in slurmd slurmctld slurmdbd; do
            alive "$run_dir/$daemon.pid" && echo "$daemon: pid $(cat "$run_dir/$daemon.pid")" || echo "$daemon: not running"
        done
        sinfo || echo "sinfo: slurmctld does not answer"
        ;;
    *) die "unknown command '$1' (up, down or status)" ;;
esac
