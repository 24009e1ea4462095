/*
 * api_i.h - marks the functions libdafs exports.
 *
 * The library is built with -fvisibility=hidden so that only what
 * include/dafs/dafs.h declares is visible to applications; every definition
 * of a public function carries DAFS_API.
 */
#ifndef DAFS_CLIENT_API_I_H
#define DAFS_CLIENT_API_I_H

#define DAFS_API __attribute__((visibility("default")))

#endif /* DAFS_CLIENT_API_I_H */
