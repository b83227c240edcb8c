#!/usr/bin/env bash
# Install and configure what tests/test_launchers_*.py run engines through, for real:
# Slurm (slurmctld, slurmd, munge), Grid Engine (qmaster, execd), PBS-style qsub (Slurm's
# Torque wrappers), Open MPI, sshd, iproute2 (network namespaces) and tcpdump (captures on
# a veth, tests/test_security_curve.py).
#
# Idempotent, for a Debian 12 machine where we are root. It starts no daemon: the tests
# start the ones they use and stop them (tests/infra/systems.py). Run by `make test`;
# `make test-cluster` runs it and only the launcher tests.
#
# Grid Engine and Slurm's Torque wrappers cannot both be installed as packages (both
# ship /usr/bin/qsub: slurm-wlm-torque Conflicts: gridengine-client), so Grid Engine is
# installed, and the wrappers are unpacked from their .deb into $PBS_DIR; the PBS tests
# point the pbs launchers' commands there.
set -euo pipefail

STAMP_DIR=/var/lib/taskhub-test-infra
STAMP=$STAMP_DIR/installed-v1
PBS_DIR=/opt/taskhub-pbs/bin
PACKAGES=(slurm-wlm munge openmpi-bin libopenmpi-dev openssh-server iproute2
          gridengine-master gridengine-exec gridengine-client
          libslurm-perl libslurmdb-perl libswitch-perl perl)

say() { echo "setup_batch_systems: $*"; }

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "not root on a Debian-like system: not installing Slurm, Grid Engine, PBS," \
        "Open MPI and sshd; the launcher tests that need them will fail and say why."
    exit 0
fi
# tcpdump is checked on its own, so that machines set up before it was needed get it too.
if ! command -v tcpdump >/dev/null; then
    say "apt-get install tcpdump"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcpdump >/dev/null
fi
if [ -f "$STAMP" ] && [ -x $PBS_DIR/qsub ] && command -v slurmctld sge_qmaster mpiexec \
        /usr/sbin/sshd >/dev/null; then
    exit 0   # done on an earlier run
fi

start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
apt-get update -q >/dev/null

# Grid Engine asks (debconf) for its cell and master host; answer before installing.
debconf-set-selections <<'EOF'
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string localhost
gridengine-master shared/gridengineconfig boolean true
gridengine-master shared/gridenginecell string default
gridengine-master shared/gridenginemaster string localhost
gridengine-client shared/gridengineconfig boolean true
gridengine-client shared/gridenginecell string default
gridengine-client shared/gridenginemaster string localhost
EOF
say "apt-get install ${PACKAGES[*]}"
apt-get install -y -q "${PACKAGES[@]}" >/tmp/taskhub-apt-install.log 2>&1 || {
    tail -30 /tmp/taskhub-apt-install.log; exit 1; }

# -- PBS: Slurm's Torque wrappers, unpacked beside (not instead of) Grid Engine's qsub --
say "unpacking slurm-wlm-torque into $PBS_DIR"
work=$(mktemp -d)
chown _apt "$work" 2>/dev/null || true   # apt downloads as _apt where it can
(cd "$work" && apt-get download -q slurm-wlm-torque >/dev/null)
dpkg-deb -x "$work"/slurm-wlm-torque_*.deb "$work/root"
mkdir -p $PBS_DIR
cp "$work"/root/usr/bin/* $PBS_DIR/
rm -rf "$work"
# The wrappers run sbatch, squeue, ... from their own directory.
for cmd in sbatch salloc srun scancel squeue scontrol sinfo; do
    ln -sf "/usr/bin/$cmd" "$PBS_DIR/$cmd"
done

# -- Slurm: one node, "localhost", with more CPUs than the machine (engines mostly wait) --
mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<'EOF'
# Written by taskhub's tests/infra/setup_batch_systems.sh: a single-node test cluster.
ClusterName=taskhub
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# cgroup tracking, so that scancel also ends what a job's processes double-forked
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# CPUs=8 on a 2-core machine: without config_overrides slurmd would refuse the node, and
# with the real count a 4-engine job would pend forever.
SlurmdParameters=config_overrides
MinJobAge=30
KillWait=5
NodeName=localhost CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
# Without an explicit cgroup.conf, Slurm 22.05 looks for a "freezer(null)" hierarchy.
cat > /etc/slurm/cgroup.conf <<'EOF'
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
CgroupAutomount=no
EOF
chown munge:munge /run/munge

# -- Grid Engine: configured once here (the settings live in its spool), by a qmaster
#    started for the purpose and stopped again --
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
say "configuring Grid Engine"
echo "localhost $(hostname)" > $SGE_ROOT/default/common/host_aliases
mkdir -p /var/run/gridengine /var/spool/gridengine/execd
chown sgeadmin:sgeadmin /var/run/gridengine /var/spool/gridengine/execd
own_qmaster=no
if ! pgrep -x sge_qmaster >/dev/null; then /usr/sbin/sge_qmaster; own_qmaster=yes; fi
for _ in $(seq 100); do qstat >/dev/null 2>&1 && break; sleep 0.1; done
conf=$(mktemp -d)
qconf -sconf > "$conf/global"
sed -i -e 's/^min_uid .*/min_uid 0/' -e 's/^min_gid .*/min_gid 0/' \
       -e 's/^login_shells .*/login_shells NONE/' "$conf/global"
(cd "$conf" && qconf -Mconf global >/dev/null 2>&1)   # the file must be named after the host
qconf -ssconf > "$conf/sched"
sed -i -e 's/^schedule_interval .*/schedule_interval 0:0:1/' "$conf/sched"
qconf -Msconf "$conf/sched" >/dev/null
printf 'hostname localhost\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' \
    > "$conf/exechost"
qconf -se localhost >/dev/null 2>&1 || qconf -Ae "$conf/exechost" >/dev/null
qconf -ss 2>/dev/null | grep -qx localhost || qconf -as localhost >/dev/null
if ! qconf -sq all.q >/dev/null 2>&1; then
    qconf -sq > "$conf/queue"   # the template queue
    sed -i -e 's/^qname .*/qname all.q/' -e 's/^hostlist .*/hostlist localhost/' \
           -e 's/^slots .*/slots 16/' -e 's/^pe_list .*/pe_list NONE/' \
           -e 's/^load_thresholds .*/load_thresholds NONE/' -e 's#^shell .*#shell /bin/sh#' \
           "$conf/queue"
    qconf -Aq "$conf/queue" >/dev/null
fi
rm -rf "$conf"
if [ $own_qmaster = yes ]; then
    qconf -km >/dev/null 2>&1 || true
    for _ in $(seq 150); do pgrep -x sge_qmaster >/dev/null || break; sleep 0.1; done
fi

mkdir -p $STAMP_DIR /run/sshd
touch "$STAMP"
say "done in $(( $(date +%s) - start )) s"
