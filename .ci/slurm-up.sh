#!/usr/bin/env bash
# Bring up a real single-node SLURM (Debian 12, as root, no systemd) for the workflow's CI test:
# munge, MariaDB + slurmdbd (accounting ON: without sacct, submitit can wait forever on a job that
# died without a result), slurmctld, slurmd. Idempotent. PIDs we start go to $STATE/pids.
set -euo pipefail
STATE=${DAR_SLURM_STATE:-/run/dar-slurm}
PART=${DAR_SLURM_PARTITION:-debug}
say() { echo "[slurm-up] $*" >&2; }
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_until() { local what=$1; shift; for _ in $(seq 1 360); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done; say "timeout: $what"; exit 1; }
track() { echo "$1 $(cat "$2")" >>"$STATE/pids"; }

[ "$(id -u)" = 0 ] || { say "needs root"; exit 1; }
mkdir -p "$STATE"
need=""
for p in munge slurm-client slurmctld slurmd slurmdbd mariadb-server mariadb-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  say "installing:$need"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >"$STATE/apt.log" 2>&1
fi

# No systemd here: the runtime folders must be made by hand.
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge /var/lib/munge
install -d -o slurm -g slurm -m 0755 /run/slurm /var/log/slurm /var/spool/slurmctld
install -d -m 0755 /var/spool/slurmd
install -d -o mysql -g mysql -m 0755 /run/mysqld
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key

CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {m=int($2/1024); print (m > 4096 ? m - 2048 : int(m/2))}' /proc/meminfo)
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=darci
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a per-CPU default every job takes the whole node's memory and jobs run one at a time.
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MinJobAge=300
KillWait=5
InactiveLimit=0
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PART Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$STATE/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=darci
StorageLoc=slurm_acct_db
CONF
install -o slurm -g slurm -m 0600 "$STATE/slurmdbd.conf" /etc/slurm/slurmdbd.conf

if ! running /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged --force
  wait_until "munged" test -s /run/munge/munged.pid && track munged /run/munge/munged.pid
fi
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/mariadb-install.log" 2>&1
if ! running /run/mysqld/mysqld.pid; then
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock </dev/null >>/var/log/slurm/mariadb.log 2>&1 &
  wait_until "mariadb" mariadb-admin --socket=/run/mysqld/mysqld.sock ping
  wait_until "mariadb pid" test -s /run/mysqld/mysqld.pid && track mariadbd /run/mysqld/mysqld.pid
fi
mariadb --socket=/run/mysqld/mysqld.sock -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'darci'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
if ! running /run/slurm/slurmdbd.pid; then
  /usr/sbin/slurmdbd && wait_until "slurmdbd" test -s /run/slurm/slurmdbd.pid && track slurmdbd /run/slurm/slurmdbd.pid
fi
wait_until "sacctmgr" sacctmgr -n show cluster
if ! running /run/slurm/slurmctld.pid; then
  /usr/sbin/slurmctld && wait_until "slurmctld" test -s /run/slurm/slurmctld.pid && track slurmctld /run/slurm/slurmctld.pid
fi
wait_until "slurmctld up" sh -c 'scontrol ping | grep -q UP'
if ! running /run/slurm/slurmd.pid; then
  /usr/sbin/slurmd -N localhost && wait_until "slurmd" test -s /run/slurm/slurmd.pid && track slurmd /run/slurm/slurmd.pid
fi
for _ in $(seq 1 180); do
  st=$(sinfo -h -N -n localhost -o %T 2>/dev/null | head -1)
  case "$st" in idle | mixed | allocated) break ;; down* | drain*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;; esac
  sleep 0.5
done
sinfo
say "ready (partition $PART, $CPUS CPUs, ${MEM} MB)"
