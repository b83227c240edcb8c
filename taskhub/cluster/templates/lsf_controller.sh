#!/bin/sh
# The taskhub controller as an LSF job.
#BSUB -J {job_name}
#BSUB -n 1
#BSUB -o {log_dir}/lsf-controller-%J.log
{directives}
cd {log_dir}
exec {command}
