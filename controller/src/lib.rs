//! FerroLB controller library: the pure allocation core and its kube shell.
