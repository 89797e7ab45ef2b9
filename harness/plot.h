/* plot.h: `descent plot` (see plot.c). */
#ifndef DS_PLOT_H
#define DS_PLOT_H

#include "../core/ds.h"

/* Draws the figures of a sweep or run folder into DIR/plots; *n_figures
 * (may be NULL) receives how many. */
ds_status ds_plot_dir(const char *dir, int *n_figures, struct ds_err *err);
/* argv: the arguments after "plot". Returns the exit code. */
int ds_cmd_plot(int argc, char **argv);

#endif
