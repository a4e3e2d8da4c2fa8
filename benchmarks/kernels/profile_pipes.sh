# Clock/power per call, then Nsight Compute on one warm call of each, on the lent GPU machine:
#   bash benchmarks/kernels/profile_pipes.sh     (writes into $OUT; ~4 minutes on an H100)
# ncu runs with --clock-control none: the card's clocks are left as found.
set -u
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,driver_version --format=csv
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"; $NCU --version | tail -1
P=benchmarks/kernels/profile_pipes.py
PYTHONUNBUFFERED=1 python3 $P --clocks 2>&1 | tee $OUT/clocks.txt
S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section InstructionStats --section SchedulerStats --section Occupancy"
for c in sdpa k1 k1s k2 k2b; do
  timeout 120 $NCU --clock-control none --profile-from-start off $S --print-details all python3 $P --call $c > $OUT/ncu_$c.txt 2>&1
  echo "$c rc=$?"
done
timeout 150 $NCU --clock-control none --profile-from-start off --section SourceCounters --section WarpStateStats \
  -o $OUT/k2b python3 $P --call k2b > $OUT/ncu_k2b_src.log 2>&1; echo "source counters rc=$?"
$NCU --import $OUT/k2b.ncu-rep --page source --csv --print-source sass > $OUT/k2b_source.csv 2>&1 && rm $OUT/k2b.ncu-rep
python3 $P --summary $OUT
