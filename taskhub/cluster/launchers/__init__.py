"""The launchers beyond this machine's local processes (the interface is ../launcher.py).

    mpi.py     N engines as one `mpiexec` (each engine registers its MPI rank)
    ssh.py     engines, or the controller, on other hosts through `ssh`
    batch.py   Slurm (sbatch/scancel), PBS/Torque (qsub/qdel) and Grid Engine
               (qsub/qdel) jobs rendered from the templates in ../templates/
"""
