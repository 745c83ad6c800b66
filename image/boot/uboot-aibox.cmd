# AI Box A/B boot selection with boot counting, for U-Boot (compile into boot.scr with
# `mkimage -A arm64 -T script -C none -d uboot-aibox.cmd boot.scr`). The environment is the
# one libubootenv's fw_setenv writes from Linux (aibox's U-Boot backend). The rule is
# AIBoxCore's BootEnvironment.boot(), as in grub-aibox.cfg:
#   the first slot of AIBOX_ORDER that may boot — good, or trying with a try left (spent here,
#   before booting) — boots; a trying slot without tries becomes bad; if none may boot, the
#   first of the order boots anyway.

if test -z "${AIBOX_ORDER}"; then
  setenv AIBOX_ORDER "A B"
  setenv AIBOX_A_STATE good
  setenv AIBOX_A_LEFT 0
  setenv AIBOX_B_STATE bad
  setenv AIBOX_B_LEFT 0
fi

setenv aibox_slot
for slot in ${AIBOX_ORDER}; do
  if test -z "${aibox_slot}"; then
    if test "${slot}" = "A"; then
      setenv state "${AIBOX_A_STATE}"; setenv left "${AIBOX_A_LEFT}"
    else
      setenv state "${AIBOX_B_STATE}"; setenv left "${AIBOX_B_LEFT}"
    fi
    if test "${state}" = "good"; then
      setenv aibox_slot "${slot}"
    elif test "${state}" = "trying"; then
      if test "${left}" = "0"; then
        setenv state bad
      else
        setexpr left ${left} - 1
        setenv aibox_slot "${slot}"
      fi
    fi
    if test "${slot}" = "A"; then
      setenv AIBOX_A_STATE "${state}"; setenv AIBOX_A_LEFT "${left}"
    else
      setenv AIBOX_B_STATE "${state}"; setenv AIBOX_B_LEFT "${left}"
    fi
  fi
done
if test -z "${aibox_slot}"; then
  for slot in ${AIBOX_ORDER}; do
    if test -z "${aibox_slot}"; then setenv aibox_slot "${slot}"; fi
  done
fi
# The try is spent before the kernel starts: a hang in the kernel still counts.
saveenv

if test "${aibox_slot}" = "A"; then setenv aibox_part root-a; else setenv aibox_part root-b; fi
setenv bootargs "${bootargs} root=PARTLABEL=${aibox_part} ro aibox.slot=${aibox_slot}"
load ${devtype} ${devnum}:1 ${kernel_addr_r} /Image-${aibox_slot}
load ${devtype} ${devnum}:1 ${fdt_addr_r} /dtb-${aibox_slot}
booti ${kernel_addr_r} - ${fdt_addr_r}
