//! The fixture packages' spec files (rpmbuild).

pub const SPECS: &[(&str, &str)] = &[
    (
        "fx-base",
        r#"Name: fx-base
Version: 1.0
Release: 1
Summary: fixture base
License: MIT
BuildArch: noarch
%description
fixture
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc/fx %{buildroot}/var/lib/fx %{buildroot}/usr/lib/fx
printf 'fx payload\n' > %{buildroot}/usr/bin/fx
printf 'setting=1\n' > %{buildroot}/etc/fx/fx.conf
printf 'state\n' > %{buildroot}/var/lib/fx/state
%post -p <lua>
local f = assert(io.open("/usr/lib/fx/post-ran", "w"))
f:write("fx-base post ran\n")
f:close()
%files
%attr(0755,root,root) /usr/bin/fx
%dir /etc/fx
%config(noreplace) /etc/fx/fx.conf
%dir /var/lib/fx
/var/lib/fx/state
%dir /usr/lib/fx
%ghost /usr/lib/fx/post-ran
"#,
    ),
    (
        "fx-app",
        r#"Name: fx-app
Epoch: 2
Version: 0.5
Release: 3
Summary: fixture app
License: MIT
BuildArch: noarch
Requires: fx-base >= 1.0
%description
fixture
%install
mkdir -p %{buildroot}/usr/share/fx-app %{buildroot}/usr/share/locale/de/LC_MESSAGES %{buildroot}/usr/share/man/man1
printf 'app\n' > %{buildroot}/usr/share/fx-app/README
printf 'de\n' > %{buildroot}/usr/share/locale/de/LC_MESSAGES/fx-app.mo
printf 'manual page\n' > %{buildroot}/usr/share/man/man1/fx-app.1
printf 'release notes\n' > NOTES
printf 'MIT licence text\n' > LICENSE
%files
/usr/share/fx-app
%lang(de) /usr/share/locale/de/LC_MESSAGES/fx-app.mo
/usr/share/man/man1/fx-app.1
%doc NOTES
%license LICENSE
"#,
    ),
    // Not a bootable kernel (the image is built, not booted, here): the
    // file layout of Fedora's kernel-core, plus a prebuilt initramfs, which
    // the initramfs stage uses as it is (no dracut in this root).
    (
        "fx-kernel",
        r#"Name: fx-kernel
Version: 6.1.0
Release: 1
Summary: fixture kernel layout
License: MIT
BuildArch: noarch
%description
fixture
%install
d=%{buildroot}/usr/lib/modules/6.1.0-fx
mkdir -p $d/kernel
printf 'fixture vmlinuz, not bootable\n' > $d/vmlinuz
: > $d/modules.dep
printf 'fixture initramfs\n' > $d/initramfs.img
%files
/usr/lib/modules/6.1.0-fx
"#,
    ),
    (
        "fx-release",
        r#"Name: fx-release
Version: 45
Release: 1
Summary: fixture os-release
License: MIT
BuildArch: noarch
%description
fixture
%install
mkdir -p %{buildroot}/usr/lib
printf 'NAME="Fixture Linux"\nID=fixture\nVERSION_ID=45\nPRETTY_NAME="Fixture Linux 45"\n' > %{buildroot}/usr/lib/os-release
%files
/usr/lib/os-release
"#,
    ),
    (
        "fx-conflict",
        r#"Name: fx-conflict
Version: 1.0
Release: 1
Summary: fixture that conflicts with fx-base
License: MIT
BuildArch: noarch
Conflicts: fx-base
%description
fixture
%install
mkdir -p %{buildroot}/usr/share/fx-conflict
printf 'c\n' > %{buildroot}/usr/share/fx-conflict/README
%files
/usr/share/fx-conflict
"#,
    ),
    (
        "fx-rogue",
        r#"Name: fx-rogue
Version: 1.0
Release: 1
Summary: fixture signed by an unknown key
License: MIT
BuildArch: noarch
%description
fixture
%install
mkdir -p %{buildroot}/usr/share/fx-rogue
printf 'rogue\n' > %{buildroot}/usr/share/fx-rogue/README
%files
/usr/share/fx-rogue
"#,
    ),
];
