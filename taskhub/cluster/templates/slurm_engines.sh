#!/bin/sh
# taskhub engines as one Slurm job: srun starts {n} engines, one per task.
#SBATCH --job-name={job_name}
#SBATCH --ntasks={n}
#SBATCH --output={log_dir}/slurm-engines-%j.log
{directives}
exec srun --ntasks={n} {command}
