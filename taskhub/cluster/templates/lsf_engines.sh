#!/bin/sh
# taskhub engines as one LSF job: {n} engines on one host, as background processes of this
# script (bkill ends the whole job). For engines on several hosts, start them with blaunch
# or mpiexec instead.
#BSUB -J {job_name}
#BSUB -n {n}
#BSUB -R "span[hosts=1]"
#BSUB -o {log_dir}/lsf-engines-%J.log
{directives}
cd {log_dir}
for i in $(seq {n}); do
    {command} &
done
wait
