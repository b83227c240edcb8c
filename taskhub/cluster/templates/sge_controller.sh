#!/bin/sh
# The taskhub controller as a Grid Engine job.
#$ -N {job_name}
#$ -V
#$ -cwd
#$ -j y
#$ -o {log_dir}/sge-controller.$JOB_ID.log
#$ -S /bin/sh
{directives}
exec {command}
