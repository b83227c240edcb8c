#!/bin/sh
# The taskhub controller as a Slurm job.
#SBATCH --job-name={job_name}
#SBATCH --ntasks=1
#SBATCH --output={log_dir}/slurm-controller-%j.log
{directives}
exec {command}
