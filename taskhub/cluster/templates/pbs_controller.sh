#!/bin/sh
# The taskhub controller as a PBS/Torque job.
#PBS -N {job_name}
#PBS -V
#PBS -j oe
#PBS -o {log_dir}/pbs-controller-{tag}.log
{directives}
cd {log_dir}
exec {command}
