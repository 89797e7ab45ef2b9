/* plot.h: `descent plot` (see plot.c). */
#ifndef DS_PLOT_H
#define DS_PLOT_H

#include "../core/ds.h"

/* Draws the figures of a sweep or run folder into DIR/plots; *n_figures
 * (may be NULL) receives how many. */
ds_status ds_plot_dir(const char *dir, int *n_figures, struct ds_err *err);
/* Runs gnuplot on pdir/NAME.gp with pdir as its working folder (so a script
 * names its files relative to it), its output in pdir/NAME.log, removed on
 * success. DS_ERR_USAGE when gnuplot is not installed, DS_ERR_FAILED when it
 * fails. Used by the figures here and by `descent scale`. */
ds_status ds_plot_gnuplot(const char *pdir, const char *name, struct ds_err *err);
/* argv: the arguments after "plot". Returns the exit code. */
int ds_cmd_plot(int argc, char **argv);

#endif
