/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_cos.h — `sealvm cos ...`: object storage from the command line
 * (cmd_cos.c), registered in main.c's command table.
 */
#ifndef SEALVM_CLI_CMD_COS_H
#define SEALVM_CLI_CMD_COS_H

int cmd_cos_bucket_create(int argc, char **argv);
int cmd_cos_bucket_list(int argc, char **argv);
int cmd_cos_bucket_show(int argc, char **argv);
int cmd_cos_bucket_delete(int argc, char **argv);
int cmd_cos_put(int argc, char **argv);
int cmd_cos_get(int argc, char **argv);
int cmd_cos_head(int argc, char **argv);
int cmd_cos_ls(int argc, char **argv);
int cmd_cos_rm(int argc, char **argv);
int cmd_cos_presign(int argc, char **argv);

#endif
