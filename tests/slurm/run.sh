#!/usr/bin/env bash
# tests/slurm/run.sh — `make test-slurm` (opt-in: it starts daemons, so it is not in `make test`).
# A one-node Slurm (slurmctld + slurmd as root, auth/none, no munge, no cgroups) in a temporary
# directory, then `srun --mpi=pmix -n 2 cpeft train ...`: the two ranks must find each other through
# Slurm's PMIx (no mpirun) and end on the bytes of the same run under `mpirun -np 2`.
# Needs root and Debian's slurmctld, slurmd and slurm-client; prints "skip: <why>" and exits 0 without.
set -u
build=${1:-build}
bin=$build/cpeft
skip() { echo "skip test-slurm: $*"; exit 0; }
[[ $(id -u) -eq 0 ]] || skip "needs root (slurmd runs the tasks as root here)"
for c in slurmctld slurmd srun sinfo mpirun; do command -v $c >/dev/null || skip "no $c (apt-get install slurmctld slurmd slurm-client)"; done
[[ -x $bin ]] || { echo "FAIL: no $bin (make first)"; exit 1; }
plugins=$(dirname "$(find /usr/lib -name auth_none.so -path '*slurm*' 2>/dev/null | head -1)")
[[ -f $plugins/auth_none.so && -f $plugins/mpi_pmix.so ]] || skip "this Slurm has no auth/none or mpi/pmix plugin"

dir=$(mktemp -d /tmp/cpeft-slurm-XXXXXX)
host=$(hostname -s)
port=$((20000 + RANDOM % 20000))
cpus=$(nproc)
mkdir -p "$dir/state" "$dir/spool"
cat > "$dir/slurm.conf" <<CONF
ClusterName=cpeft
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$dir/slurm.conf
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
t0=$(date +%s)
slurmctld -D -i -f "$SLURM_CONF" > "$dir/slurmctld.out" 2>&1 & pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" > "$dir/slurmd.out" 2>&1 & pids+=($!)
for i in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^idle' && break
    sleep 1
done
if ! sinfo -h -o %T 2>/dev/null | grep -qE '^idle'; then
    echo "FAIL: the one-node Slurm did not come up in 60 s"; tail -5 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/*.out; exit 1
fi
echo "  one-node Slurm up in $(( $(date +%s) - t0 )) s ($(slurmctld -V), auth/none)"
echo "  srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n' ' ')"

model=$dir/tm
mkdir -p "$model" && cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors \
    ../shared/data/gpt2-tokenizer/tokenizer.json "$model/"
args="--model $model --data ../shared/data/alpaca-subset/alpaca_tiny.json --max-steps 4 --gradient-accumulation-steps 2 \
--per-device-train-batch-size 2 --learning-rate 1e-2 --logging-steps 1 --save-steps 2 --max-seq-length 64 --seed 3 \
--target-modules c_attn --lora-dropout 0.1 --progress lines"
root_flag=$([[ $(id -u) -eq 0 ]] && echo --allow-run-as-root)
fail=0
export OMP_NUM_THREADS=1
out=$(timeout 300 srun --mpi=pmix -N 1 -n 2 --kill-on-bad-exit=1 $bin train $args --output-dir "$dir/s" 2>&1); rc=$?
if [[ $rc -ne 0 ]] || ! grep -q "processes: 2 ranks x 1 thread" <<<"$out"; then
    echo "FAIL: srun --mpi=pmix -n 2 (exit $rc):"; echo "$out" | tail -20; fail=1
else
    echo "  srun --mpi=pmix -n 2: $(grep -m1 'processes:' <<<"$out")"
fi
out2=$(timeout 300 mpirun $root_flag --oversubscribe -np 2 $bin train $args --output-dir "$dir/m" 2>&1) || { echo "FAIL: mpirun:"; echo "$out2" | tail; fail=1; }
if [[ $fail -eq 0 ]]; then
    if cmp "$dir/s/adapter_model.safetensors" "$dir/m/adapter_model.safetensors"; then
        echo "  srun's 2 ranks end on the bytes of mpirun's 2 ranks"
    else echo "FAIL: srun's adapter differs from mpirun's"; fail=1; fi
fi
# a task that dies under srun --kill-on-bad-exit ends the step instead of hanging: Slurm sends SIGTERM to
# the others (blocked in a collective, they cannot stop after their step) and SIGKILL KillWait (5 s here,
# 30 s by default) later
t1=$(date +%s)
out=$(CPEFT_TEST_DIST_FAIL=1:3:die timeout 120 srun --mpi=pmix -N 1 -n 2 --kill-on-bad-exit=1 $bin train $args --output-dir "$dir/k" 2>&1); rc=$?
if [[ $rc -eq 0 || $rc -eq 124 ]]; then echo "FAIL: a dying task under srun: exit $rc"; echo "$out" | tail; fail=1
else echo "  a task that dies under srun: the step ends (exit $rc) after $(( $(date +%s) - t1 )) s"; fi
if [[ $fail -eq 0 ]]; then echo "test-slurm: passed"; else echo "test-slurm: FAILED"; fi
exit $fail
