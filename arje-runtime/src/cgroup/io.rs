//! The io controller: io.weight. Only the iocost controller (CONFIG_BLK_CGROUP_IOCOST)
//! creates `io.weight`; with BFQ alone the file is `io.bfq.weight`, so support is probed
//! by the file, not by the controller.

/// The kernel's default io.weight, written when a weight is cleared.
pub(crate) const DEFAULT_WEIGHT: u16 = 100;

/// io.weight the kernel's way: "default N" sets the weight of every device.
pub(crate) fn io_weight_value(weight: Option<u16>) -> String {
    format!("default {}", weight.unwrap_or(DEFAULT_WEIGHT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_io_weight_value_default_keyword() {
        assert_eq!(io_weight_value(Some(500)), "default 500");
        assert_eq!(io_weight_value(None), "default 100");
    }
}
