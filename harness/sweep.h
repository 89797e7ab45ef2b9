/* sweep.h: `descent sweep` (see sweep.c). */
#ifndef DS_SWEEP_H
#define DS_SWEEP_H

/* argv: the arguments after "sweep". Returns the exit code. */
int ds_cmd_sweep(int argc, char **argv);

#endif
