#!/bin/sh
# taskhub engines as one PBS/Torque job: {n} engines on one node, as background processes
# of this script (qdel ends the job's whole session). For engines on several nodes, start
# them with pbsdsh or mpiexec instead.
#PBS -N {job_name}
#PBS -l nodes=1:ppn={n}
#PBS -V
#PBS -j oe
#PBS -o {log_dir}/pbs-engines-{tag}.log
{directives}
cd {log_dir}
for i in $(seq {n}); do
    {command} &
done
wait
