#!/bin/sh
# taskhub engines as a Grid Engine array job: {n} tasks, one engine each.
#$ -N {job_name}
#$ -t 1-{n}
#$ -V
#$ -cwd
#$ -j y
#$ -o {log_dir}/sge-engines.$JOB_ID.$TASK_ID.log
#$ -S /bin/sh
{directives}
exec {command}
